"""The outreach kiosk: a second frontend over the viewer's model and renderers (see docs/kiosk.md).

- :mod:`.show`: the show file (typed, validated; errors name the line and the field);
- :mod:`.machine`: the input model, a pure state machine (events in, requests out);
- :mod:`.controller`: applies requests to the model, tours, structures, labels (no GL);
- :mod:`.structures`: density peaks / friends-of-friends and the automatic tour;
- :mod:`.quality`: adaptive point budget; :mod:`.usage`: the anonymous usage log;
- :mod:`.view`: the picture (GL); :mod:`.window`: the Qt full-screen window;
- :mod:`.rehearse` and :mod:`.events_file`: headless rehearsal with scripted events;
- :mod:`.supervise`: restarts a crashed or hung kiosk.

Submodules are imported on demand (importing this package imports no GL).
"""
