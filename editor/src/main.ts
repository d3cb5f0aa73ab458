import { EditorPage } from './page.ts';

// The page's one entry: build the editor and restore the last project (router/src/editor-assets.ts serves it).
const page = new EditorPage();
(window as unknown as { editorPage: EditorPage }).editorPage = page;
void page.start();
