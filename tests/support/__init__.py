"""What the test modules share: helpers, fixture set-ups and pytest plugins for subprocess runs. Test
modules import from here, never from each other."""
