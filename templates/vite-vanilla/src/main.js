import './style.css';
import { message } from './message.js';

document.querySelector('#app').innerHTML = `
  <h1 data-testid="title">Vite vanilla preview</h1>
  <p data-testid="message">${message}</p>
`;
