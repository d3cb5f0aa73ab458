/** Limits shared by every hop of the sync path (editor, router, agent, daemon). */
export const LIMITS = {
  /** Longest project-relative path, in bytes of UTF-8. */
  pathBytes: 512,
  /** Deepest directory nesting of a project path. */
  pathDepth: 24,
  /** Largest single file, decoded. */
  fileBytes: 5 * 1024 * 1024,
  /** Largest batch, decoded content summed. */
  batchBytes: 20 * 1024 * 1024,
  /** Most operations in one batch. */
  batchOps: 2000,
  /** Most files one project may hold. */
  projectFiles: 10_000,
  /** Most bytes one project may hold. */
  projectBytes: 200 * 1024 * 1024,
  /** Largest WebSocket frame accepted (base64 adds a third). */
  frameBytes: 28 * 1024 * 1024,
} as const;
