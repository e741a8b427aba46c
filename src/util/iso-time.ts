/**
 * `Date.prototype.toISOString` without V8's time-zone machinery. On Node 20 the first
 * toISOString() of a process initialises V8's date cache with the local time zone through ICU,
 * which pages in ~640 KB of ICU's data (measured: resident pages of `icudt78_dat` in
 * /proc/<pid>/pagemap, 464 KB in a bare node, 1,104 KB after one toISOString; the getUTC*
 * accessors touch none). The agent daemon logs a certificate's `not_after` at start and at every
 * renewal: that line alone was 1.6% of the 1.3× memory budget of issue #19 (docs/performance.md
 * "Agent footprint"). Same string as toISOString for years 0–9999; outside that range (never a
 * certificate's) it defers to toISOString.
 */
const two = (n: number): string => (n < 10 ? `0${n}` : String(n));

export function isoTime(t: number | Date): string {
  const d = typeof t === 'number' ? new Date(t) : t;
  const y = d.getUTCFullYear();
  if (!(y >= 0 && y <= 9999)) return d.toISOString(); // NaN and far years: toISOString's own answer (or RangeError)
  const ms = d.getUTCMilliseconds();
  return (
    `${String(y).padStart(4, '0')}-${two(d.getUTCMonth() + 1)}-${two(d.getUTCDate())}` +
    `T${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())}.${String(ms).padStart(3, '0')}Z`
  );
}
