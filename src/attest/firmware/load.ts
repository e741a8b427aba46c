/**
 * Load every firmware profile of a directory (`firmware-profiles/` by default). All files are
 * validated before any is returned; names must be unique across files.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { SigilError } from '../../errors.js';
import { parseFirmwareProfile, type FirmwareProfile } from './schema.js';

/** A profile is a page of hex; anything far bigger is a mistake (or not a profile). */
const MAX_PROFILE_BYTES = 1024 * 1024;

export function loadFirmwareProfiles(dir: string): Map<string, FirmwareProfile> {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (e) {
    throw new SigilError(
      'config_invalid',
      `firmware profiles: cannot read directory ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
  const profiles = new Map<string, FirmwareProfile>();
  for (const file of names.filter((n) => /\.ya?ml$/i.test(n)).sort()) {
    const path = join(dir, file);
    const st = statSync(path);
    if (!st.isFile()) continue;
    if (st.size > MAX_PROFILE_BYTES)
      throw new SigilError(
        'config_invalid',
        `${path}: ${st.size} bytes is over the ${MAX_PROFILE_BYTES}-byte limit for a profile`,
      );
    const profile = parseFirmwareProfile(readFileSync(path, 'utf8'), path);
    const clash = profiles.get(profile.name);
    if (clash)
      throw new SigilError(
        'config_invalid',
        `${path}: profile name "${profile.name}" is already defined in ${clash.source}`,
      );
    profiles.set(profile.name, profile);
  }
  return profiles;
}
