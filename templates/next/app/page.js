import Counter from './counter.js';

export default function Page() {
  return (
    <main>
      <h1 data-testid="title">Next.js preview</h1>
      <Counter />
    </main>
  );
}
