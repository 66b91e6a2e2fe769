/**
 * The page builds every element with these helpers: text goes in through textContent only, so keys,
 * values and ids from the network or from users are always shown as text and never parsed as HTML.
 */

type Child = Node | string | null | undefined | false

export function el<K extends keyof HTMLElementTagNameMap> (tag: K, attrs: Record<string, string> = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag)
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value)
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue
    node.append(typeof child === 'string' ? document.createTextNode(child) : child)
  }
  return node
}

const SVG_NS = 'http://www.w3.org/2000/svg'

export function svg<K extends keyof SVGElementTagNameMap> (tag: K, attrs: Record<string, string | number> = {}): SVGElementTagNameMap[K] {
  const node = document.createElementNS(SVG_NS, tag)
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value))
  return node
}

export const $ = (id: string): HTMLElement => {
  const node = document.getElementById(id)
  if (node === null) throw new Error(`the page has no #${id}`)
  return node
}

/** Longest text shown for one value; the rest is summarised. */
export const VALUE_CHARS_SHOWN = 500

/** A value as text: UTF-8 if it is, else hex; truncated past VALUE_CHARS_SHOWN with its size said. */
export function valueText (bytes: Uint8Array): string {
  let text: string
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes)
  } catch {
    text = `0x${Array.from(bytes.subarray(0, VALUE_CHARS_SHOWN / 2), b => b.toString(16).padStart(2, '0')).join('')}`
  }
  return text.length > VALUE_CHARS_SHOWN ? `${text.slice(0, VALUE_CHARS_SHOWN)}… (${bytes.length} bytes)` : text
}

export function shortId (id: string): string {
  return id.length > 14 ? `${id.slice(0, 6)}…${id.slice(-6)}` : id
}

/** Twelve colours far apart from each other. */
const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#bcbd22', '#393b79', '#ad494a', '#637939']

/**
 * A member's colour: by its place among the members sorted by id, so every tab that sees the same members
 * colours them alike and the first twelve never share one; beyond twelve, a hue from the id.
 */
export function colourOf (id: string, sortedIds: readonly string[]): string {
  const i = sortedIds.indexOf(id)
  if (i >= 0 && i < PALETTE.length) return PALETTE[i]!
  let h = 2166136261
  for (let j = 0; j < id.length; j++) h = Math.imul(h ^ id.charCodeAt(j), 16777619)
  return `hsl(${(h >>> 0) % 360} 65% 45%)`
}

export function bytesText (n: number): string {
  if (n < 1024) return `${n} B`
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`
  return `${(n / 1024 / 1024).toFixed(1)} MiB`
}
