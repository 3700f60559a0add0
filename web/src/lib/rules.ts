// The server's rules for account fields (crates/accounts/src/model.rs: `Username`,
// `Password`, `DisplayName`), checked before sending so that a mistake is told next to its
// field, in the app's language, instead of in the browser's tooltip. The server checks
// them again; its `invalid_field` answers are worded by these same rules.
import type { TextKey } from './i18n';

export const USERNAME_CHARS_MIN = 3;
export const USERNAME_CHARS_MAX = 32;
export const PASSWORD_CHARS_MIN = 8;
export const PASSWORD_BYTES_MAX = 1024;
export const DISPLAY_NAME_CHARS_MAX = 64;

/** Bidirectional controls (embeddings, overrides, isolates, marks), as `plaza_kernel::text` has them. */
const BIDI_CONTROL = /[\u202A-\u202E\u2066-\u2069\u200E\u200F\u061C]/;
/** Unicode control characters (Rust's `char::is_control`: the Cc category). */
const CONTROL = /[\u0000-\u001F\u007F-\u009F]/;

/** What is wrong with a username for signing up (`null`: nothing). Stored lower-case, so capitals pass. */
export function usernameRule(raw: string): TextKey | null {
  const name = raw.trim().toLowerCase();
  if (!name) return 'field.username_required';
  if (name.length < USERNAME_CHARS_MIN || name.length > USERNAME_CHARS_MAX) return 'field.username_length';
  if (!/^[a-z0-9_]+$/.test(name)) return 'field.username_chars';
  return null;
}

export function passwordRule(raw: string): TextKey | null {
  if (!raw) return 'field.password_required';
  if ([...raw].length < PASSWORD_CHARS_MIN) return 'field.password_short';
  if (new TextEncoder().encode(raw).length > PASSWORD_BYTES_MAX) return 'field.password_long';
  return null;
}

/** An empty display name is allowed: the username stands in for it. */
export function displayNameRule(raw: string): TextKey | null {
  const name = raw.trim();
  if ([...name].length > DISPLAY_NAME_CHARS_MAX) return 'field.display_name_long';
  if (CONTROL.test(name) || BIDI_CONTROL.test(name)) return 'field.display_name_chars';
  return null;
}
