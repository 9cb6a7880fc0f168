// What partner- and admin-supplied strings may contain (src/input/printable-text.ts), and how the CLI escapes
// whatever reaches a terminal anyway (src/cli/terminal-text.ts).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { escapeJson, escapeText, escapeValue } from '../../src/cli/terminal-text.js';
import { NOT_PRINTABLE, printableTextProblem, uriTextProblem } from '../../src/input/printable-text.js';

/** Strings that drive a terminal or fake its layout: ESC/OSC/CSI, 8-bit C1 CSI, bidi, separators, zero width. */
const HOSTILE = {
  'ESC (OSC window title)': 'a\u001b]0;pwned\u0007b',
  'ESC (CSI clear screen)': 'a\u001b[2Jb',
  'BEL': 'a\u0007b',
  'backspace': 'admin\u0008\u0008\u0008\u0008\u0008guest',
  'carriage return': 'orders\rrevoked',
  'newline': 'orders\nstatus          revoked',
  'tab': 'a\tb',
  'DEL': 'a\u007fb',
  'C1 CSI (U+009B)': 'a\u009b2Jb',
  'C1 OSC (U+009D)': 'a\u009d0;x\u009cb',
  'NEL (U+0085)': 'a\u0085b',
  'RLO bidi override': 'a\u202eevil\u202cb',
  'LRI bidi isolate': 'a\u2066b\u2069',
  'RLM': 'a\u200fb',
  'ALM': 'a\u061cb',
  'line separator U+2028': 'a\u2028b',
  'paragraph separator U+2029': 'a\u2029b',
  'zero-width space': 'a\u200bb',
  'BOM': '\ufeffab',
  'tag character': 'a\u{e0041}b',
  'lone surrogate': 'a\ud800b',
  'private use': 'a\ue000b',
  'unassigned': 'a\u0378b',
} as const;

describe('printableTextProblem / uriTextProblem (server-side refusal)', () => {
  it('accepts names in any script, with spaces and punctuation', () => {
    for (const name of ['Partner Co', 'Société Générale — orders', '日本の取引先', 'Ωmega (prod) #2', 'emoji 🙂 ok', 'x'.repeat(200), '🙂'.repeat(200)]) {
      assert.equal(printableTextProblem(name, 'client_name', 200), undefined, name);
    }
  });

  it('refuses every control, format, separator, surrogate, private-use and unassigned code point', () => {
    for (const [what, value] of Object.entries(HOSTILE)) {
      assert.match(printableTextProblem(value, 'client_name', 200) ?? '', /^client_name must be printable text/, what);
    }
  });

  it('refuses non-strings, blank strings and over-long strings (counted in characters)', () => {
    for (const v of [undefined, null, 42, ['a'], '', '   ']) assert.match(printableTextProblem(v, 'name', 200) ?? '', /non-empty string/, String(v));
    assert.match(printableTextProblem('x'.repeat(201), 'name', 200) ?? '', /at most 200 characters/);
    assert.match(printableTextProblem('🙂'.repeat(201), 'name', 200) ?? '', /at most 200 characters/);
  });

  it('every code point is either printable text or refused, never both (fast-check, seeded)', () => {
    fc.assert(fc.property(fc.string({ unit: 'binary', minLength: 1, maxLength: 20 }), (s) => {
      const problem = printableTextProblem(`x${s}`, 'f', 100);
      assert.equal(problem === undefined, !NOT_PRINTABLE.test(s));
    }), { seed: 20_260_410, numRuns: 2000 });
  });

  it('URIs: printable ASCII only, no space, bounded', () => {
    assert.equal(uriTextProblem('https://partner.example.com/jwks.json?v=1', 'jwks_uri'), undefined);
    for (const [what, value] of [...Object.entries(HOSTILE), ['space', 'https://a.example/x y'], ['non-ASCII', 'https://exämple.com/jwks']]) {
      assert.match(uriTextProblem(`https://a.example/${value}`, 'jwks_uri') ?? '', /printable ASCII/, what);
    }
    assert.match(uriTextProblem(`https://a.example/${'x'.repeat(2000)}`, 'jwks_uri') ?? '', /at most 2000/);
    assert.match(uriTextProblem(7, 'jwks_uri') ?? '', /non-empty string/);
  });
});

describe('CLI escaping (terminal-text)', () => {
  it('escapeValue makes every hostile string visible and inert, on one line', () => {
    for (const [what, value] of Object.entries(HOSTILE)) {
      const out = escapeValue(value);
      assert.ok(!NOT_PRINTABLE.test(out), `${what}: ${JSON.stringify(out)}`);
      assert.ok(out.includes('\\'), `${what} shows an escape`);
    }
    assert.equal(escapeValue('a\u001b]0;pwned\u0007b'), 'a\\x1b]0;pwned\\x07b');
    assert.equal(escapeValue('a\u009b2J'), 'a\\x9b2J');
    assert.equal(escapeValue('x\u202ey\n'), 'x\\u202ey\\x0a');
    assert.equal(escapeValue('a\u{e0041}'), 'a\\u{e0041}');
    assert.equal(escapeValue('a\ud800'), 'a\\ud800');
    assert.equal(escapeValue('Société 日本 🙂'), 'Société 日本 🙂', 'printable text is unchanged');
  });

  it('escapeText keeps the layout\'s newlines and escapes everything else', () => {
    assert.equal(escapeText('name  a\u001b[2J\nstatus  active\r'), 'name  a\\x1b[2J\nstatus  active\\x0d');
  });

  it('escapeJson: no raw non-printable code point, and the same document to a JSON parser (fast-check, seeded)', () => {
    const doc = { name: Object.values(HOSTILE).join(''), keys: [{ kid: '\u009b\u2028\u202e' }] };
    const json = JSON.stringify(doc, null, 2);
    assert.ok(NOT_PRINTABLE.test(json.replace(/\n/g, '')), 'JSON.stringify alone leaves C1, bidi and U+2028 raw');
    const escaped = escapeJson(json);
    assert.ok(!NOT_PRINTABLE.test(escaped.replace(/\n/g, '')), escaped);
    assert.deepEqual(JSON.parse(escaped), doc);
    fc.assert(fc.property(fc.jsonValue(), fc.string({ unit: 'binary' }), (value, s) => {
      const v = { value, s };
      const out = escapeJson(JSON.stringify(v, null, 2));
      assert.ok(!NOT_PRINTABLE.test(out.replace(/\n/g, '')));
      assert.deepEqual(JSON.parse(out), JSON.parse(JSON.stringify(v)));
    }), { seed: 20_260_410, numRuns: 500 });
  });
});
