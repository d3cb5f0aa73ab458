import { describe, expect, it } from 'vitest';
import { TokenSet } from './auth.ts';

const token = 't'.repeat(32);

describe('TokenSet', () => {
  it('accepts the token as a bearer, as x-agent-token, or as ?token= when the caller passes it', () => {
    const tokens = new TokenSet([token]);
    expect(tokens.accepts({ authorization: `Bearer ${token}` })).toBe(true);
    expect(tokens.accepts({ 'x-agent-token': token })).toBe(true);
    expect(tokens.accepts({}, token)).toBe(true);
  });

  it('refuses no token, a wrong one, a prefix of the right one and a bearer without the scheme', () => {
    const tokens = new TokenSet([token]);
    expect(tokens.accepts({})).toBe(false);
    expect(tokens.accepts({ authorization: 'Bearer wrong' })).toBe(false);
    expect(tokens.accepts({ authorization: `Bearer ${token.slice(1)}` })).toBe(false);
    expect(tokens.accepts({ authorization: token })).toBe(false);
    expect(tokens.accepts({ authorization: `Basic ${token}` })).toBe(false);
  });

  it('x-agent-token wins over Authorization, so the app may carry its own Authorization', () => {
    const tokens = new TokenSet([token]);
    expect(tokens.accepts({ 'x-agent-token': token, authorization: 'Bearer the-apps-own' })).toBe(true);
    expect(tokens.accepts({ 'x-agent-token': 'wrong', authorization: `Bearer ${token}` })).toBe(false);
  });

  it('takes new tokens (a credential from re-registration) and counts each once', () => {
    const tokens = new TokenSet();
    expect(tokens.size).toBe(0);
    tokens.add('c'.repeat(40));
    tokens.add('c'.repeat(40));
    expect(tokens.size).toBe(1);
    expect(tokens.accepts({ authorization: `Bearer ${'c'.repeat(40)}` })).toBe(true);
  });
});
