/**
 * Commander's own errors (unknown option or command, missing argument or required option) in
 * our form: one line `error[bad_request]: <commander's message> (see sigil <cmd> --help)`, or
 * the JSON line with `--format json`, and exit 2 — instead of commander's `error: …` followed
 * by the whole help text, which pushed the one useful line off the screen (issue #12 item 7).
 */
import type { Command } from 'commander';
import { SigilError } from '../errors.js';
import { reportError } from './output.js';

function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/**
 * Route the usage errors of `program` and every command below it through reportError. Call it
 * after all commands are registered: commander copies output settings into a subcommand when
 * it is created, so each command gets its own (naming its own help).
 */
export function reportUsageErrorsOurWay(program: Command): void {
  const visit = (cmd: Command): void => {
    cmd.showHelpAfterError(false).configureOutput({
      outputError: (str) => {
        const message = str.trim().replace(/^error:\s*/, '');
        reportError(new SigilError('bad_request', `${message} (see ${commandPath(cmd)} --help)`));
      },
    });
    cmd.commands.forEach(visit);
  };
  visit(program);
}
