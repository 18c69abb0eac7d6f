"""The deploy check: an integration app that deploys the canary into a real account, asserts on it and
is destroyed again (`make integ`). See integ/integ_canary.py."""
