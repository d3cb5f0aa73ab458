import { type ReactNode, type RefObject, useEffect, useRef } from 'react';
import { CodeEditor } from './code-editor.ts';

/** Props of `CodeMirror`. */
export interface CodeMirrorProps {
  /** Set to the CodeMirror wrapper while mounted (open files, move the cursor), null after. */
  editorRef: RefObject<CodeEditor | null>;
  /** A user edit of the open file (not an `open`): its path and whole text. */
  onChange: (path: string, text: string) => void;
  /** Called once the view exists (e.g. to open the first file). */
  onReady?: (editor: CodeEditor) => void;
  id?: string;
}

/**
 * CodeMirror 6 in React: one `CodeEditor` made on mount and destroyed on unmount. The document is
 * not a prop (each keystroke would re-render it): open files through `editorRef.current.open`.
 */
export function CodeMirror(props: CodeMirrorProps): ReactNode {
  const host = useRef<HTMLDivElement>(null);
  const onChange = useRef(props.onChange);
  onChange.current = props.onChange;
  const onReady = useRef(props.onReady);
  onReady.current = props.onReady;
  const { editorRef } = props;
  useEffect(() => {
    const el = host.current;
    if (!el) return;
    const editor = new CodeEditor(el, (path, text) => onChange.current(path, text));
    editorRef.current = editor;
    onReady.current?.(editor);
    return () => {
      editorRef.current = null;
      editor.destroy();
    };
  }, [editorRef]);
  return <div id={props.id} ref={host} />;
}
