import { css } from '@codemirror/lang-css';
import { html } from '@codemirror/lang-html';
import { javascript } from '@codemirror/lang-javascript';
import { json } from '@codemirror/lang-json';
import { vue } from '@codemirror/lang-vue';
import { Compartment, EditorSelection, EditorState, type Extension } from '@codemirror/state';
import { EditorView } from '@codemirror/view';
import { basicSetup } from 'codemirror';

/** The CodeMirror language for a file name (JS/TS/JSX/TSX, CSS, HTML, JSON, Vue); none for others. */
export function languageFor(path: string): Extension {
  const ext = path.slice(path.lastIndexOf('.') + 1).toLowerCase();
  switch (ext) {
    case 'js':
    case 'mjs':
    case 'cjs':
      return javascript();
    case 'jsx':
      return javascript({ jsx: true });
    case 'ts':
    case 'mts':
    case 'cts':
      return javascript({ typescript: true });
    case 'tsx':
      return javascript({ jsx: true, typescript: true });
    case 'css':
      return css();
    case 'html':
    case 'htm':
      return html();
    case 'json':
      return json();
    case 'vue':
      return vue();
    default:
      return [];
  }
}

/**
 * One CodeMirror 6 view showing one file at a time. `onChange(path, text)` runs on every user edit
 * (not on `open`).
 */
export class CodeEditor {
  readonly view: EditorView;
  #language = new Compartment();
  #path: string | undefined;
  #opening = false;

  constructor(parent: HTMLElement, onChange: (path: string, text: string) => void) {
    this.view = new EditorView({
      parent,
      state: EditorState.create({
        doc: '',
        extensions: [
          basicSetup,
          this.#language.of([]),
          EditorView.updateListener.of((u) => {
            if (u.docChanged && !this.#opening && this.#path !== undefined)
              onChange(this.#path, u.state.doc.toString());
          }),
        ],
      }),
    });
  }

  /** The open file's path, or undefined when none is open. */
  get path(): string | undefined {
    return this.#path;
  }

  /**
   * Puts the cursor on 1-based `line` (and `column`, clamped to the line), scrolls it into view and
   * focuses the editor. Lines past the end go to the last line.
   */
  goTo(line: number, column = 1): void {
    const doc = this.view.state.doc;
    const l = doc.line(Math.min(Math.max(1, Math.floor(line) || 1), doc.lines));
    const pos = l.from + Math.min(Math.max(0, Math.floor(column) - 1 || 0), l.length);
    this.view.dispatch({
      selection: EditorSelection.cursor(pos),
      effects: EditorView.scrollIntoView(pos, { y: 'center' }),
    });
    this.view.focus();
  }

  /** The 1-based line and column of the cursor. */
  get cursor(): { line: number; column: number } {
    const head = this.view.state.selection.main.head;
    const l = this.view.state.doc.lineAt(head);
    return { line: l.number, column: head - l.from + 1 };
  }

  /** Takes the view out of the page. */
  destroy(): void {
    this.view.destroy();
  }

  /** Shows `text` as the file `path` (undefined: an empty, read-only view). */
  open(path: string | undefined, text: string): void {
    this.#opening = true;
    try {
      this.#path = path;
      this.view.dispatch({
        changes: { from: 0, to: this.view.state.doc.length, insert: text },
        effects: this.#language.reconfigure(path ? languageFor(path) : []),
      });
    } finally {
      this.#opening = false;
    }
  }
}
