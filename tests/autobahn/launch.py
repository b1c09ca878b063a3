# Python 2 launcher for `wstest` (Autobahn Testsuite) that keeps every listening socket on
# loopback. wstest's fuzzingserver calls reactor.listenTCP(port, factory, backlog, '')
# i.e. it binds all interfaces, and has no option to change that. We wrap the reactor's
# listen methods so that whatever interface is asked for, 127.0.0.1 is used.
#
# Usage: python2.7 launch.py <wstest arguments>, e.g.
#        python2.7 launch.py -m fuzzingserver -s spec.json -u 0
import sys

# Importing wstest first matters: its first import (choosereactor) installs the epoll
# reactor, and that must happen before anything imports twisted.internet.reactor.
from autobahntestsuite import wstest
from twisted.internet import reactor

LOOPBACK = '127.0.0.1'

_listen_tcp = reactor.listenTCP
_listen_ssl = reactor.listenSSL


def listen_tcp(port, factory, backlog=50, interface=''):
    return _listen_tcp(port, factory, backlog, LOOPBACK)


def listen_ssl(port, factory, context_factory, backlog=50, interface=''):
    return _listen_ssl(port, factory, context_factory, backlog, LOOPBACK)


# Instance attributes shadow the class methods; every module (wstest, fuzzing,
# autobahn.twisted.websocket.listenWS) holds this same reactor object.
reactor.listenTCP = listen_tcp
reactor.listenSSL = listen_ssl

sys.argv = ['wstest'] + sys.argv[1:]
sys.exit(wstest.run())
