const message: string = 'Hello from TypeScript';

document.querySelector<HTMLDivElement>('#app')!.innerHTML = `
  <h1 data-testid="title">Vite TypeScript preview</h1>
  <p data-testid="message">${message}</p>
`;
