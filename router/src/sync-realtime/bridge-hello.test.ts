import { describe, expect, it } from 'vitest';
import { HELLO_MAX_CHARS, parseHello } from './bridge-hello.ts';

describe('parseHello', () => {
  it('takes the editor token out of a hello', () => {
    const got = parseHello(JSON.stringify({ type: 'hello', client: 'e1', lastSeq: 3, editorToken: 't' }));
    expect(got?.editorToken).toBe('t');
    expect(JSON.parse(got!.text)).toEqual({ type: 'hello', client: 'e1', lastSeq: 3 });
  });

  it('reads a hello without a string token as one without a token', () => {
    expect(parseHello(JSON.stringify({ type: 'hello', editorToken: 7 }))).toEqual({
      text: '{"type":"hello"}',
      editorToken: undefined,
    });
  });

  it('is undefined for other frames, non-JSON, null and text past the size cap', () => {
    expect(parseHello(JSON.stringify({ type: 'batch', seq: 1 }))).toBeUndefined();
    expect(parseHello('{not json')).toBeUndefined();
    expect(parseHello('null')).toBeUndefined();
    const big = JSON.stringify({ type: 'hello', pad: 'x'.repeat(HELLO_MAX_CHARS) });
    expect(parseHello(big)).toBeUndefined();
  });
});
