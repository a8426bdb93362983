// A camera on Socket.IO, with the JavaScript client from the npm registry (socket.io-client).
// Usage: node sio_client.js <server url> <jwt> <envelope json>
// Prints one JSON line per event: {"ack": ...} for the envelope's acknowledgement, then
// {"command": ...} when the server pushes a command, and exits.
const { io } = require('socket.io-client');

const [base, token, envelope] = process.argv.slice(2);
const socket = io(base + '/device', { auth: { token }, reconnection: false });
const say = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

socket.on('connect_error', (err) => { say({ connect_error: err.message, data: err.data }); process.exit(1); });
socket.on('connect', () => {
  socket.emit('envelope', JSON.parse(envelope), (ack) => say({ ack }));
});
socket.on('command', (push) => { say({ command: push }); socket.close(); process.exit(0); });
setTimeout(() => { say({ timeout: true }); process.exit(2); }, 30000);
