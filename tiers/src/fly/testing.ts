/** Test helpers for the fly tier (`@preview/tiers/fly/testing`): the fake Machines API and its validator. */
export * from './fake-machines-api.ts';
export * from './openapi-validator.ts';
