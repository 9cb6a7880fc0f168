// Other spellings of a path that some router, proxy or URL parser might take for the same one:
// case, slashes, dot segments, percent-encoding, path parameters, fragments. Sigil serves none.

function percentEncode(ch: string, upper: boolean): string {
  const hex = ch.charCodeAt(0).toString(16).padStart(2, '0');
  return `%${upper ? hex.toUpperCase() : hex.toLowerCase()}`;
}

/** Every variant starts with '/', so it is a path (an origin-form request target), and differs from `path`. */
export function pathVariants(path: string): string[] {
  const lastSlash = path.lastIndexOf('/');
  const firstLetter = /[a-z]/.exec(path.slice(1));
  const letterAt = firstLetter ? firstLetter.index + 1 : -1;
  const innerLetterAt = /[a-z]/.exec(path.slice(lastSlash + 2))?.index;
  const at = (i: number, replacement: string) => path.slice(0, i) + replacement + path.slice(i + 1);
  const variants = [
    path.toUpperCase(),
    letterAt >= 0 ? at(letterAt, path[letterAt]!.toUpperCase()) : undefined,
    `${path}/`,
    `${path}//`,
    `/${path}`,
    `/.${path}`,
    `/%2e${path}`,
    `/x/..${path}`,
    `/x/%2e%2e${path}`,
    lastSlash > 0 ? `${path.slice(0, lastSlash)}//${path.slice(lastSlash + 1)}` : undefined,
    lastSlash > 0 ? `${path.slice(0, lastSlash)}/./${path.slice(lastSlash + 1)}` : undefined,
    lastSlash > 0 ? `${path.slice(0, lastSlash)}%2F${path.slice(lastSlash + 1)}` : undefined,
    lastSlash > 0 ? `${path.slice(0, lastSlash)}%2f${path.slice(lastSlash + 1)}` : undefined,
    `${path}/.`,
    `${path}/x/..`,
    `${path}.`,
    `${path};x`,
    `${path};`,
    `${path}#x`,
    `${path}%20`,
    `${path}%00`,
    `${path}%2F`,
    `${path}\\`,
    `${path}%09`,
    letterAt >= 0 ? at(letterAt, percentEncode(path[letterAt]!, false)) : undefined,
    innerLetterAt !== undefined ? at(lastSlash + 2 + innerLetterAt, percentEncode(path[lastSlash + 2 + innerLetterAt]!, true)) : undefined,
    innerLetterAt !== undefined ? at(lastSlash + 2 + innerLetterAt, percentEncode(path[lastSlash + 2 + innerLetterAt]!, false)) : undefined,
  ];
  return [...new Set(variants.filter((v): v is string => v !== undefined && v !== path && v.startsWith('/')))];
}
