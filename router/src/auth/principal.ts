/** Who is calling. A discriminated union: a node can never be mistaken for a user. */
export type Principal =
  | { kind: 'user'; userId: string; via: 'jwt' }
  | { kind: 'user'; userId: string; via: 'api_key'; keyId: string }
  | { kind: 'node'; nodeId: string };

export type UserPrincipal = Extract<Principal, { kind: 'user' }>;
