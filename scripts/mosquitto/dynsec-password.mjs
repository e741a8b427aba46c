#!/usr/bin/env node
/**
 * Set a client's password in a mosquitto dynamic-security.json, in the format mosquitto_ctrl
 * writes (PBKDF2-HMAC-SHA512, 101 iterations, 12-byte salt, base64) — so that the file can be
 * prepared before the broker first starts, without an admin client on the broker.
 *
 *   node scripts/mosquitto/dynsec-password.mjs /etc/mosquitto/sigil/dynamic-security.json bootstrap
 *
 * reads the password from stdin (one line). Restart (or start) mosquitto afterwards: the plugin
 * reads the file at start-up.
 */
import { pbkdf2Sync, randomBytes } from 'node:crypto';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The dynamic-security JSON with `username`'s password set (the client must exist). */
export function withPassword(json, username, password) {
  const cfg = JSON.parse(json);
  const client = (cfg.clients ?? []).find((c) => c.username === username);
  if (!client) throw new Error(`no client "${username}" in the dynamic-security file`);
  const salt = randomBytes(12);
  Object.assign(client, {
    salt: salt.toString('base64'),
    password: pbkdf2Sync(password, salt, 101, 64, 'sha512').toString('base64'),
    iterations: 101,
  });
  return JSON.stringify(cfg, null, 2) + '\n';
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [file, username] = process.argv.slice(2);
  if (!file || !username) {
    console.error('usage: dynsec-password.mjs DYNAMIC_SECURITY_JSON USERNAME  (password on stdin)');
    process.exit(2);
  }
  const password = readFileSync(0, 'utf8').split('\n')[0];
  if (!password) {
    console.error('error: empty password on stdin');
    process.exit(2);
  }
  writeFileSync(file, withPassword(readFileSync(file, 'utf8'), username, password), { mode: 0o600 });
  // `mode` applies only when the file is created; a copied example keeps its 0644 otherwise.
  chmodSync(file, 0o600);
}
