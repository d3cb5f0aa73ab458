import { useState } from 'react';

export default function App() {
  const [count, setCount] = useState(0);
  return (
    <main style={{ fontFamily: 'system-ui, sans-serif', margin: '2rem' }}>
      <h1 data-testid="title">Vite React TypeScript preview</h1>
      <button type="button" data-testid="counter" onClick={() => setCount((c: number) => c + 1)}>
        count is {count}
      </button>
    </main>
  );
}
