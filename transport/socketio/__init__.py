"""Socket.IO for cameras (CONTRACT section 4): the only package that imports python-socketio."""
