// The baseline: express with express.json() and a handler that answers 202
// with the body it parsed. Whatever our server costs beyond this is our work.
import express from 'express';

const app = express();
app.disable('x-powered-by');
app.use(express.json({ limit: 64 * 1024 }));
app.post('/v1/images', (req, res) => {
  res.status(202).json({ change: 'created', target: req.body });
});
const server = app.listen(0, '127.0.0.1', () => {
  const address = server.address();
  process.stdout.write(`${JSON.stringify({ msg: 'listening', port: typeof address === 'object' && address ? address.port : 0 })}\n`);
});
process.once('SIGTERM', () => server.close());
