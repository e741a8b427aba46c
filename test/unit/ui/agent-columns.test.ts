/**
 * The fleet and machine pages show each instance's transport (the carrier of its last join or
 * renewal) and agent version (the agent's claim) from its facts (issue #18). The version is
 * printable ASCII by the protocol schema, which still admits markup: it is escaped like any value.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signIn, startUiRig, type UiRig } from './ui-rig.js';

const HOSTILE_VERSION = '<script>alert(1)</script>';

describe('transport and agent version columns', () => {
  let rig: UiRig;
  let cookie: string;
  beforeAll(async () => {
    rig = await startUiRig();
    await rig.addInstance({ id: 'col-mqtt', facts: { transport: 'mqtt', agent_version: '0.1.0' } });
    await rig.addInstance({ id: 'col-none' });
    await rig.addInstance({ id: 'col-xss', facts: { transport: 'https', agent_version: HOSTILE_VERSION } });
    cookie = (await signIn(rig)).cookie;
  });
  afterAll(() => rig.close());

  const get = (url: string) => rig.app.inject({ method: 'GET', url, headers: { cookie } });
  /** The fleet row of `id`: its <tr>…</tr>. */
  const rowOf = (body: string, id: string): string => {
    const at = body.indexOf(`href="/ui/machine/${id}"`);
    expect(at, id).toBeGreaterThan(0);
    return body.slice(body.lastIndexOf('<tr>', at), body.indexOf('</tr>', at));
  };
  const cells = (tr: string): string[] =>
    [...tr.matchAll(/<td[^>]*>([\s\S]*?)<\/td>/g)].map((m) => m[1]!.replace(/<[^>]+>/g, '').trim());

  it('the fleet page has the two columns, each row its values, — where none is known', async () => {
    const r = await get('/ui/?q=col-');
    expect(r.statusCode).toBe(200);
    const heads = [...r.body.matchAll(/<th scope="col"[^>]*>([\s\S]*?)<\/th>/g)].map((m) =>
      m[1]!.replace(/<[^>]+>/g, '').trim(),
    );
    const t = heads.indexOf('Transport');
    expect(t).toBeGreaterThan(0);
    expect(heads[t + 1]).toBe('Agent version');
    expect(cells(rowOf(r.body, 'col-mqtt')).slice(t, t + 2)).toEqual(['mqtt', '0.1.0']);
    expect(cells(rowOf(r.body, 'col-none')).slice(t, t + 2)).toEqual(['—', '—']);
    // Every row has as many cells as there are headers.
    expect(cells(rowOf(r.body, 'col-none'))).toHaveLength(heads.length);
  });

  it('a hostile agent version renders as text on both pages', async () => {
    const fleet = await get('/ui/?q=col-xss');
    expect(fleet.body).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(fleet.body).not.toContain(HOSTILE_VERSION);
    const m = await get('/ui/machine/col-xss');
    expect(m.body).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(m.body).not.toContain(HOSTILE_VERSION);
  });

  it('the machine page names both, the version as claimed, and does not list them again as raw facts', async () => {
    const m = await get('/ui/machine/col-mqtt');
    expect(m.statusCode).toBe(200);
    const dl = m.body.replace(/\s+/g, ' ');
    expect(dl).toMatch(/<dt>Transport<\/dt> <dd[^>]*>mqtt<\/dd>/);
    expect(dl).toMatch(/<dt>Agent version<\/dt> <dd[^>]*> 0\.1\.0 <span class="muted">\(claimed\)<\/span> <\/dd>/);
    expect(dl).not.toContain('<dt>agent_version</dt>');
    expect(dl).not.toContain('<dt>transport</dt>');
  });
});
