// Who a demo user is: the name they type is any text (spaces, accents: "Zoë Ann") and is what
// everyone sees, carried in the token's `meta`; the user id the token carries is derived from it,
// because a user id is 1-64 of A-Z a-z 0-9 _ - . : @ (docs/PROTOCOL.md, Tokens). A name that is
// already such an id is its own id (readable in logs and webhooks); any other name, trimmed and in
// Unicode NFC form, becomes `n-` and 20 hex digits of its SHA-256, so the same name is the same
// user in every tab and on every device, as with a plain id. (A real app takes the id from its
// own sessions and the name from its user's profile.)
const PLAIN = /^[A-Za-z0-9_.@-]{1,64}$/;

/** The display name as the demos keep it: trimmed, NFC. */
export const cleanName = (name) => name.trim().normalize("NFC");

/** The user id for `name` (see above). */
export async function userId(name) {
  const clean = cleanName(name);
  if (PLAIN.test(clean) && !clean.startsWith("n-")) return clean;
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(clean)));
  return `n-${[...digest.slice(0, 10)].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/** A token from the development-only endpoint for `name` in `room`, the name in its meta. */
export async function devToken(name, room) {
  const meta = encodeURIComponent(JSON.stringify({ name: cleanName(name) }));
  const user = encodeURIComponent(await userId(name));
  const res = await fetch(`/dev/token?user=${user}&room=${encodeURIComponent(room)}&meta=${meta}`);
  if (!res.ok) throw new Error(`token: ${res.status} ${await res.text()}`);
  return (await res.json()).token;
}
