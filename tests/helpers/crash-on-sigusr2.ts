// Test-only preload (`node --import`): on SIGUSR2 the process fails the way a gateway bug would:
// TEST_CRASH_KIND=exception throws an error nobody catches, =rejection rejects a promise nobody handles,
// =exit calls process.exit(3) from wherever it is, skipping the shutdown.
process.on('SIGUSR2', () => {
  const kind = process.env.TEST_CRASH_KIND;
  if (kind === 'rejection') void Promise.reject(new Error('test: an unhandled rejection'));
  else if (kind === 'exit') process.exit(3);
  else
    setImmediate(() => {
      throw new Error('test: an uncaught exception');
    });
});
