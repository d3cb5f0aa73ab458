import { fileURLToPath } from 'node:url';

/** Test helpers for the fly tier (`@preview/tiers/testkit/fly`): the fake Machines API and its validator. */
export * from './fake-machines-api.ts';
export * from './openapi-validator.ts';

/** The in-repo Machines API schemas (derived from Fly's published OpenAPI document; see `derive-fixture.ts`). */
export const FLY_MACHINES_API_FIXTURE = fileURLToPath(new URL('./fly-machines-api.json', import.meta.url));
