import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { terminalProgressBar } from '../../../src/worker/engine/progress-bar.js';

describe('terminalProgressBar', () => {
  test('the terminal progress bar redraws at most every 100 ms and ends with a newline', () => {
    let text = '';
    let now = 0;
    const stream = new Writable({ write: (chunk, _enc, cb) => ((text += String(chunk)), cb()) });
    const bar = terminalProgressBar(stream, 'x', () => now);
    bar.update(10, 100);
    now = 50;
    bar.update(20, 100);
    now = 200;
    bar.update(100, 100);
    bar.done();
    assert.equal(text.split('\r').length - 1, 2);
    assert.match(text, /100% /);
    assert.ok(text.endsWith('\n'));
  });
});
