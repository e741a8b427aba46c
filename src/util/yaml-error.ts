/**
 * One line from a YAML parse error. The yaml package's message is its first line ("… at line
 * 5, column 11:") followed by a code frame (a blank line, the offending source line(s) and a
 * caret line); cutting at the first newline, as we did, left the operator with a colon and
 * nothing after it (issue #12 item 7). Here the frame's source text follows on the same line.
 */

/** Longest snippet quoted: a minified one-line YAML file must not become a 100 KB message. */
const MAX_SNIPPET = 160;

export function yamlErrorText(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  const [head = '', ...frame] = msg.split('\n');
  const source = frame
    .filter((l) => l.trim() !== '' && !/^\s*\^+\s*$/.test(l))
    .map((l) => l.trim())
    .join(' ⏎ ');
  if (!source) return head.replace(/:\s*$/, '');
  const snippet = source.length > MAX_SNIPPET ? `${source.slice(0, MAX_SNIPPET)}…` : source;
  return `${head.replace(/:\s*$/, '')}: ${snippet}`;
}
