// Money is integer minor units plus an ISO 4217 code; only display and input convert.
import { lang } from './i18n';

export function fractionDigits(currency: string): number {
  try {
    return new Intl.NumberFormat('en', { style: 'currency', currency }).resolvedOptions().maximumFractionDigits ?? 2;
  } catch {
    return 2;
  }
}

export function formatMoney(amount: number, currency: string): string {
  const digits = fractionDigits(currency);
  try {
    return new Intl.NumberFormat(lang.get().lang, { style: 'currency', currency }).format(amount / 10 ** digits);
  } catch {
    return `${(amount / 10 ** digits).toFixed(digits)} ${currency}`;
  }
}

/** Parses "12.5" into 1250 (for a two-digit currency) without floating point; null if invalid. */
export function parseMoney(text: string, currency: string): number | null {
  const digits = fractionDigits(currency);
  const trimmed = text.trim().replace(',', '.');
  const found = /^(\d{1,12})(?:\.(\d*))?$/.exec(trimmed);
  if (!found) return null;
  const fraction = found[2] ?? '';
  if (fraction.length > digits) return null;
  const minor = Number(found[1]) * 10 ** digits + Number(fraction.padEnd(digits, '0') || '0');
  return minor > 0 ? minor : null;
}
