/**
 * A strict JSON parser for client requests that keeps what JSON.parse loses or allows:
 * - integers outside ±(2^53-1) come back as `BigNumber` (raw text kept), so a 19-digit Go
 *   `time.Now().UnixNano()` id is echoed exactly;
 * - the raw text of the top-level `id` is returned, whatever its size;
 * - nesting depth and keys per object are bounded, and `__proto__` / `constructor` /
 *   `prototype` keys are refused.
 * Errors are `JsonError` with a position.
 */

export class BigNumber {
  constructor(readonly raw: string) {}
  toJSON(): string {
    return this.raw;
  }
  toString(): string {
    return this.raw;
  }
}

export class JsonError extends Error {
  constructor(message: string, readonly position: number) {
    super(`${message} at position ${position}`);
    this.name = 'JsonError';
  }
}

export interface ParseLimits {
  maxDepth: number;
  maxKeys: number;
}

export const DEFAULT_PARSE_LIMITS: ParseLimits = { maxDepth: 16, maxKeys: 1000 };

const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

export interface Parsed {
  value: unknown;
  /** Raw text of the top-level `id` (matched case-insensitively) when it is a number or string literal. */
  idRaw?: string;
}

const NUMBER_RE = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const SAFE = BigInt(Number.MAX_SAFE_INTEGER);

export function parseJson(text: string, limits: ParseLimits = DEFAULT_PARSE_LIMITS): Parsed {
  let pos = 0;
  let idRaw: string | undefined;

  const fail = (message: string): never => {
    throw new JsonError(message, pos);
  };
  const ws = () => {
    for (;;) {
      const c = text.charCodeAt(pos);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) pos++;
      else break;
    }
  };

  const parseString = (): string => {
    // pos is at the opening quote
    pos++;
    let out = '';
    let start = pos;
    for (;;) {
      if (pos >= text.length) fail('unterminated string');
      const c = text.charCodeAt(pos);
      if (c === 0x22) {
        out += text.slice(start, pos);
        pos++;
        return out;
      }
      if (c < 0x20) fail('control character in string');
      if (c === 0x5c) {
        out += text.slice(start, pos);
        pos++;
        const e = text[pos];
        switch (e) {
          case '"': out += '"'; break;
          case '\\': out += '\\'; break;
          case '/': out += '/'; break;
          case 'b': out += '\b'; break;
          case 'f': out += '\f'; break;
          case 'n': out += '\n'; break;
          case 'r': out += '\r'; break;
          case 't': out += '\t'; break;
          case 'u': {
            const hex = text.slice(pos + 1, pos + 5);
            if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail('bad \\u escape');
            out += String.fromCharCode(parseInt(hex, 16));
            pos += 4;
            break;
          }
          default: fail('bad escape');
        }
        pos++;
        start = pos;
        continue;
      }
      pos++;
    }
  };

  const parseNumber = (): { value: number | BigNumber; raw: string } => {
    NUMBER_RE.lastIndex = pos;
    const m = NUMBER_RE.exec(text);
    if (!m) return fail('bad number');
    const raw = m[0];
    pos += raw.length;
    if (/^-?\d+$/.test(raw)) {
      const big = BigInt(raw);
      if (big > SAFE || big < -SAFE) return { value: new BigNumber(raw), raw };
    }
    return { value: Number(raw), raw };
  };

  const parseValue = (depth: number, topKey?: string): unknown => {
    ws();
    const c = text[pos];
    if (c === '{') {
      if (depth >= limits.maxDepth) fail(`nesting deeper than ${limits.maxDepth}`);
      pos++;
      const obj: Record<string, unknown> = {};
      let keys = 0;
      ws();
      if (text[pos] === '}') {
        pos++;
        return obj;
      }
      for (;;) {
        ws();
        if (text[pos] !== '"') fail('expected a key');
        const key = parseString();
        if (FORBIDDEN_KEYS.has(key)) fail(`key "${key}" is not allowed`);
        if (++keys > limits.maxKeys) fail(`more than ${limits.maxKeys} keys in an object`);
        ws();
        if (text[pos] !== ':') fail('expected ":"');
        pos++;
        obj[key] = parseValue(depth + 1, depth === 0 ? key : undefined);
        ws();
        if (text[pos] === ',') {
          pos++;
          continue;
        }
        if (text[pos] === '}') {
          pos++;
          return obj;
        }
        fail('expected "," or "}"');
      }
    }
    if (c === '[') {
      if (depth >= limits.maxDepth) fail(`nesting deeper than ${limits.maxDepth}`);
      pos++;
      const arr: unknown[] = [];
      ws();
      if (text[pos] === ']') {
        pos++;
        return arr;
      }
      for (;;) {
        arr.push(parseValue(depth + 1));
        if (arr.length > limits.maxKeys) fail(`more than ${limits.maxKeys} array elements`);
        ws();
        if (text[pos] === ',') {
          pos++;
          continue;
        }
        if (text[pos] === ']') {
          pos++;
          return arr;
        }
        fail('expected "," or "]"');
      }
    }
    if (c === '"') {
      const start = pos;
      const s = parseString();
      if (topKey !== undefined && topKey.toLowerCase() === 'id') idRaw ??= text.slice(start, pos);
      return s;
    }
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) {
      const { value, raw } = parseNumber();
      if (topKey !== undefined && topKey.toLowerCase() === 'id') idRaw ??= raw;
      return value;
    }
    if (text.startsWith('true', pos)) {
      pos += 4;
      return true;
    }
    if (text.startsWith('false', pos)) {
      pos += 5;
      return false;
    }
    if (text.startsWith('null', pos)) {
      pos += 4;
      return null;
    }
    return fail(pos >= text.length ? 'unexpected end of input' : `unexpected character ${JSON.stringify(text[pos])}`);
  };

  const value = parseValue(0);
  ws();
  if (pos < text.length) fail('unexpected data after the JSON value');
  return idRaw === undefined ? { value } : { value, idRaw };
}
