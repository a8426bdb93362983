// An operator's dashboard: a logged-in /ws/dashboard/ socket that logs when each detection event arrives.
//
//   node bench/load/dashboard.js BASE_URL SESSION_COOKIE LOG_PATH
//
// Appends "message_id arrival_us" per detection event to LOG_PATH (flushed at least every 200 ms), and
// "alert <plate> arrival_us" per alert event. Runs until SIGTERM. Clock as in traffic.js.
'use strict';
const fs = require('fs');
const WebSocket = require('ws');
const { nowUs } = require('./traffic');

const [base, cookie, logPath] = process.argv.slice(2);
const out = fs.openSync(logPath, 'a');
let lines = [];
const flush = () => {
  if (lines.length) fs.writeSync(out, lines.join(''));
  lines = [];
};
setInterval(flush, 200);

// Like the dashboard page: a socket the server closed for falling behind (4408) reconnects and goes on.
function connect() {
  const ws = new WebSocket(`${base.replace('http', 'ws')}/ws/dashboard/`, { perMessageDeflate: false,
    headers: { Cookie: cookie, Origin: base } });
  ws.on('message', (data) => {
    const at = nowUs();
    const frame = JSON.parse(data);
    for (const event of frame.events || []) {
      if (event.type === 'detection') lines.push(`${event.message_id} ${at}\n`);
      else if (event.type === 'alert') lines.push(`alert ${event.plate} ${at}\n`);
    }
    ws.send('{"type":"next"}'); // answered once handled, as the dashboard page does (the server's flow control)
  });
  ws.on('open', () => console.log('open'));
  ws.on('close', (code) => {
    flush();
    console.error(`dashboard socket closed (${code})`);
    if (code === 4408) setTimeout(connect, 100);
    else process.exit(code === 1000 ? 0 : 1);
  });
  ws.on('error', (e) => { console.error(e.message); process.exit(1); });
}
connect();
process.on('SIGTERM', () => { flush(); process.exit(0); });
