import express from 'express';
import pg from 'pg';

const app = express();
const databaseUrl = process.env.DATABASE_URL;
const pool = databaseUrl ? new pg.Pool({ connectionString: databaseUrl, max: 2 }) : undefined;

const page = (body) => `<!doctype html>
<html lang="en">
  <head><meta charset="UTF-8" /><title>Express + Postgres preview</title></head>
  <body style="font-family: system-ui, sans-serif; margin: 2rem">
    <h1 data-testid="title">Express + Postgres preview</h1>
    ${body}
  </body>
</html>`;

app.get('/', async (_req, res) => {
  if (!pool) {
    res.send(page('<p data-testid="db">No database: DATABASE_URL is not set.</p>'));
    return;
  }
  try {
    await pool.query(
      'CREATE TABLE IF NOT EXISTS visits (id serial PRIMARY KEY, at timestamptz DEFAULT now())',
    );
    await pool.query('INSERT INTO visits DEFAULT VALUES');
    const { rows } = await pool.query('SELECT count(*)::int AS n FROM visits');
    res.send(page(`<p data-testid="db">Database connected: ${rows[0].n} visits.</p>`));
  } catch (err) {
    res.send(page(`<p data-testid="db">Database error: ${String(err.message).replace(/</g, '&lt;')}</p>`));
  }
});

app.get('/api/health', (_req, res) => {
  res.json({ ok: true, database: Boolean(pool) });
});

const port = Number(process.env.PORT ?? 3000);
app.listen(port, process.env.HOST ?? '0.0.0.0', () => {
  console.log(`listening on ${port}`);
});
