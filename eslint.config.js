import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** `no-restricted-imports` for one folder of src/worker: the folders it must not import, and engine internals. */
function workerLayer(folder, forbiddenFolders, forbiddenEngineModules = []) {
  return [
    {
      files: [`src/worker/${folder}/**/*.ts`],
      rules: {
        'no-restricted-imports': [
          'error',
          {
            patterns: [
              ...forbiddenFolders.map((other) => ({
                group: [`../${other}/*`, `**/worker/${other}/*`],
                message: `src/worker/${folder}/ must not import ${other}/ (see the layer rules in eslint.config.js)`,
              })),
              ...forbiddenEngineModules.map((module) => ({
                group: [`../engine/${module}.js`],
                message: `src/worker/${folder}/ uses the engine through engine/updater.ts and engine/switch-recheck.ts, not ${module}`,
              })),
            ],
          },
        ],
      },
    },
  ];
}

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/', '.tmp/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', URL: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-console': 'off',
    },
  },
  // The worker's folders are its protocol (docs/worker-updates.md): install/ is the base; engine/
  // checks, downloads and verifies into it; runtime/ and supervisor/ are the two programs on top.
  // Each folder may import only downward; runtime/ uses the engine through updater and
  // switch-recheck, never its internals.
  // Type-aware rules across src/: a promise nobody awaits or handles is a failure nobody sees.
  // require-await stays off: many async methods implement an async interface without awaiting.
  ...tseslint.configs.recommendedTypeChecked.map((config) => ({ ...config, files: ['src/**/*.ts'] })),
  {
    files: ['src/**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/require-await': 'off',
    },
  },
  ...workerLayer('install', ['engine', 'runtime', 'supervisor', 'telemetry']),
  ...workerLayer('engine', ['runtime', 'supervisor', 'telemetry']),
  ...workerLayer('telemetry', ['engine', 'install', 'supervisor']),
  ...workerLayer('supervisor', ['engine']),
  ...workerLayer('runtime', ['supervisor'], ['download', 'redirects', 'body-stream', 'progress-bar', 'manifest-client', 'hashing-writer', 'disk-space']),
  {
    files: ['**/*.mjs', '**/*.js'],
    languageOptions: {
      globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', URL: 'readonly', setTimeout: 'readonly' },
    },
  },
);
