"""MQTT transport (CONTRACT section 5): the bridge from broker to pipeline, downlink, credentials, embedded broker.

`client` is the one module that imports paho-mqtt; everything else here
works with its plain values.
"""
