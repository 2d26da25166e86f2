// A small accessibility check run in the page by the browser tests (no axe-core here): every visible
// control has an accessible name, and visible text has WCAG AA contrast (4.5:1, 3:1 for large text).
() => {
  const problems = [];
  const visible = (el) => {
    const r = el.getBoundingClientRect();
    const s = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && s.visibility !== "hidden" && s.display !== "none";
  };
  for (const el of document.querySelectorAll("main a[href], main button, main input, main select, main textarea")) {
    if (!visible(el) || el.type === "hidden") continue;
    const labelled = (el.labels && Array.from(el.labels).some((l) => l.textContent.trim()))
      || (el.getAttribute("aria-label") || "").trim()
      || (el.getAttribute("aria-labelledby") && document.getElementById(el.getAttribute("aria-labelledby")))
      || (el.textContent || "").trim() || (el.getAttribute("title") || "").trim();
    if (!labelled) problems.push("no accessible name: " + el.outerHTML.slice(0, 120));
    if (el.tabIndex < 0) problems.push("not keyboard reachable: " + el.outerHTML.slice(0, 120));
  }
  const parse = (c) => { const m = c.match(/[\d.]+/g) || []; return m.map(Number); };
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (let n = el; n && n.nodeType === 1; n = n.parentElement) {
      const c = parse(getComputedStyle(n).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] === 1)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const walker = document.createTreeWalker(document.querySelector("main"), NodeFilter.SHOW_TEXT);
  const seen = new Set();
  while (walker.nextNode()) {
    const el = walker.currentNode.parentElement;
    if (!walker.currentNode.textContent.trim() || seen.has(el) || !visible(el)) continue;
    if (el.closest("svg, .sr-only, [aria-hidden=true], option")) continue;
    seen.add(el);
    const s = getComputedStyle(el);
    const fg = parse(s.color);
    if (fg.length === 4 && fg[3] < 1) continue;
    const [l1, l2] = [lum(fg.slice(0, 3)), lum(background(el))].sort((a, b) => b - a);
    const ratio = (l1 + 0.05) / (l2 + 0.05);
    const size = parseFloat(s.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(s.fontWeight) >= 700);
    if (ratio < (large ? 3 : 4.5)) {
      problems.push(`contrast ${ratio.toFixed(2)}: "${el.textContent.trim().slice(0, 40)}" (${s.color} on ${background(el)})`);
    }
  }
  return problems;
}
