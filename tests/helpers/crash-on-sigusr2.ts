// Test-only preload (`node --import`): on SIGUSR2 the process throws an error nobody catches, or with
// TEST_CRASH_KIND=rejection rejects a promise nobody handles, the two ways a gateway bug surfaces.
process.on('SIGUSR2', () => {
  if (process.env.TEST_CRASH_KIND === 'rejection') void Promise.reject(new Error('test: an unhandled rejection'));
  else
    setImmediate(() => {
      throw new Error('test: an uncaught exception');
    });
});
