import type { Message, Room } from "roomcast";

export interface MessagesOptions {
  /** Messages per page: the latest page on open, and each `loadOlder()` (default 50). */
  limit?: number;
  /**
   * Most messages held (default 500): beyond, the oldest stored ones go (`more` turns true), so a
   * long-lived page does not grow without limit. `loadOlder()` widens it by the page it read.
   */
  max?: number;
}

/**
 * A message in the list: a stored one, or one of this page's publishes not stored yet
 * (`pending`: from the moment publish() was called, offline too; no `seq` yet), or refused
 * (`failed`, with the rejection as `error`). A pending one is replaced by its stored copy (matched
 * by its `id`) when the room acknowledges it: it never shows twice.
 */
export interface ListedMessage<T = unknown> extends Omit<Message<T>, "seq"> {
  /** Set once stored. */
  seq?: number;
  pending?: true;
  failed?: true;
  /** Why it was refused (a RoomcastError). */
  error?: unknown;
}

export interface MessagesView<TData = unknown> {
  /** The stored messages, each seq once, in seq order; then this page's publishes not stored yet. */
  messages: readonly ListedMessage<TData>[];
  /** Whether older messages exist than the oldest held (`loadOlder()` reads them). */
  more: boolean;
  /** A page is being read (or the room is not open yet and the first page waits for it). */
  loading: boolean;
  /** Why the last read failed (RoomcastError); cleared by the next one that succeeds. */
  error: unknown;
}

export interface MessagesFeed<TData = unknown> {
  /** The list now. */
  readonly view: MessagesView<TData>;
  /**
   * Reads the page before the oldest message held and prepends it. Resolves when done (at once
   * when there is nothing older or a read is running); a failure is in `error`, not a rejection.
   */
  loadOlder(): Promise<void>;
  /** Stops following the room (`show` is not called again). */
  stop(): void;
}

/**
 * Follows the room's messages for a list, calling `show` with each new view: the latest `limit`
 * stored ones, read when the room is open, then live ones as they arrive, each seq once; this
 * page's publishes at once as `pending`, replaced by their stored copies on the room's ack (with
 * echo off they come from the ack: `ts` is its arrival here). After a `gap` the stored list
 * starts over from the latest page.
 */
export declare function followMessages<TData = unknown>(
  room: Room<TData, any, any>,
  options?: MessagesOptions,
  show?: (view: MessagesView<TData>) => void,
): MessagesFeed<TData>;
