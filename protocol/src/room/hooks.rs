//! The webhook relay: the room's [`Outbox`] (loaded when the config applies to the room's name),
//! the events recorded in the same step as the presence changes they report (`hook_*`, called
//! by the lifecycle), and the delivery's output ([`Room::poll_webhook`]) and input
//! ([`Room::handle_webhook_result`]). What happens between them is [`crate::webhook::outbox`].

use super::Room;
use crate::compact::CompactJson;
use crate::store::{OutboxSize, PendingLeave, Store, StoreError};
use crate::webhook::event::Event as HookEvent;
use crate::webhook::{EventClass, Outbox, WebhookOutcome, WebhookRequest};

impl Room {
    /// Turns webhooks on for this room when the config applies to `name` (the adapter knows the
    /// room's name): loads the outbox (its key is `fresh_key`, random, the first time). Users
    /// the webhooks last saw present who have neither a connection nor a grace period any more
    /// (a restart took their sockets without a close) get a grace period from now, as for a
    /// close: back within it, nothing is reported; otherwise `presence.left` (and `room.vacated`)
    /// follow as usual. Call it once, right after [`Room::load`].
    pub fn attach_webhooks(&mut self, name: &str, fresh_key: &str, now: u64, store: &mut impl Store) -> Result<(), StoreError> {
        if !self.config.webhook.applies_to(name) {
            self.hooks = None;
            return Ok(());
        }
        self.hooks = Some(Outbox::load(name, self.config.webhook.clone(), fresh_key, store)?);
        if self.config.webhook.events.wants_presence() {
            let grace = self.config.presence_grace_ms;
            let mut gone = false;
            for (user, meta) in store.present_users()? {
                if self.presence.get(&user).is_some() {
                    continue;
                }
                let meta = meta.and_then(|m| CompactJson::parse_owned(m).ok());
                if grace == 0 {
                    self.hook_left(&user, meta.as_ref(), now, store);
                    gone = true;
                    continue;
                }
                let due = now.saturating_add(grace);
                // If this write fails, a later load starts the grace period again.
                let _ = store.put_pending_leave(&PendingLeave { user: user.clone(), due, meta: meta.as_ref().map(|m| m.get().to_owned()) });
                self.presence.restore_pending(&user, meta, due);
                self.announcer.restore(&user, now);
            }
            if gone {
                self.hook_vacated(now, store);
            }
        }
        Ok(())
    }

    /// The webhook POST to make now, if one is due (see [`crate::webhook::outbox`]). The adapter
    /// makes it without holding the room (other events run meanwhile) and hands the outcome to
    /// [`Room::handle_webhook_result`]. A failed read or write means no attempt this time.
    pub fn poll_webhook(&mut self, now: u64, store: &mut impl Store) -> Option<WebhookRequest> {
        self.hooks.as_mut()?.poll_request(now, store).ok().flatten()
    }

    /// How the POST of [`Room::poll_webhook`]'s attempt ended; `random` is any value from a
    /// random source (the backoff's jitter).
    pub fn handle_webhook_result(&mut self, attempt: u64, outcome: WebhookOutcome, now: u64, random: u64, store: &mut impl Store) {
        if let Some(hooks) = self.hooks.as_mut() {
            // A failed write keeps the rows (a delivered batch is sent again: at least once) or
            // the backoff state in memory only.
            let _ = hooks.handle_result(attempt, outcome, now, random, store);
        }
    }

    /// Whether the outbox can record the join (and the occupancy) that `user`, not present now,
    /// would make by connecting: presence's bound (twice the outbox's: [`crate::webhook::outbox`],
    /// *Bounds*). A store that fails to answer lets the connection in.
    pub(super) fn hooks_admit_join(&mut self, user: &str, meta: Option<&CompactJson>, now: u64, store: &mut impl Store) -> bool {
        let was_empty = self.presence.is_empty();
        let Some(hooks) = self.hooks.as_mut() else { return true };
        let occupied = if was_empty { hooks.encode(&HookEvent::Occupied, now) } else { None };
        let joined = hooks.encode(&HookEvent::Joined { user, meta }, now);
        let need = [occupied, joined].iter().flatten().fold(OutboxSize::ZERO, |n, body| n.plus(OutboxSize::one(body.len())));
        if need == OutboxSize::ZERO || hooks.admit(EventClass::Presence, need, store).unwrap_or(true) {
            return true;
        }
        hooks.count_refusal();
        false
    }

    /// A user became present: `room.occupied` first if nobody was, then `presence.joined`; the
    /// user is remembered as present (for a restart that takes their sockets). A failed write
    /// loses the event, not the change: within one step the platform's storage fails only by
    /// resetting the object, which undoes the step.
    pub(super) fn hook_joined(&mut self, user: &str, was_empty: bool, now: u64, store: &mut impl Store) {
        let Some(hooks) = self.hooks.as_mut() else { return };
        if !hooks.config().events.wants_presence() {
            return;
        }
        let meta = self.presence.get(user).and_then(|m| m.meta.as_ref());
        if was_empty {
            let _ = hooks.push(HookEvent::Occupied, now, store);
        }
        let _ = hooks.push(HookEvent::Joined { user, meta }, now, store);
        let _ = store.put_present(user, meta.map(CompactJson::get));
    }

    /// A user's departure is final (grace over, or none): `presence.left`, in the same step as
    /// the pending leave's deletion, so it is reported exactly once.
    pub(super) fn hook_left(&mut self, user: &str, meta: Option<&CompactJson>, now: u64, store: &mut impl Store) {
        let Some(hooks) = self.hooks.as_mut() else { return };
        if !hooks.config().events.wants_presence() {
            return;
        }
        let _ = hooks.push(HookEvent::Left { user, meta }, now, store);
        let _ = store.delete_present(user);
    }

    /// After departures: `room.vacated` when nobody is present or in a grace period.
    pub(super) fn hook_vacated(&mut self, now: u64, store: &mut impl Store) {
        if !self.presence.is_empty() {
            return;
        }
        if let Some(hooks) = self.hooks.as_mut() {
            let _ = hooks.push(HookEvent::Vacated, now, store);
        }
    }
}
