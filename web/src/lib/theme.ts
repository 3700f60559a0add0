// Light, dark or the system's choice, remembered per browser.
export type Theme = 'system' | 'light' | 'dark';

export function currentTheme(): Theme {
  const saved = localStorage.getItem('plaza.theme');
  return saved === 'light' || saved === 'dark' ? saved : 'system';
}

export function applyTheme(theme: Theme = currentTheme()) {
  if (theme === 'system') { localStorage.removeItem('plaza.theme'); delete document.documentElement.dataset.theme; }
  else { localStorage.setItem('plaza.theme', theme); document.documentElement.dataset.theme = theme; }
}
