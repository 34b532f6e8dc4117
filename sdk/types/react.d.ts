import type { ConnectOptions, Member, Room, State } from "roomcast";

/** The room for these options (null until mounted). One connection per room and options, also
 * under StrictMode and hot reload; closed when the last component using it unmounts. */
export declare function useRoom(options: ConnectOptions): Room | null;
/** The member list, re-rendering on presence changes. */
export declare function usePresence(room: Room | null): readonly Member[];
/** The connection state, re-rendering on changes. */
export declare function useConnectionState(room: Room | null): State;
