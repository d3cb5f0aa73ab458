export { startDirectorySandbox } from './dir-sandbox.ts';
export { connectRawEditor, type RawEditor } from './editor.ts';
export { serveSyncHub } from './serve.ts';
