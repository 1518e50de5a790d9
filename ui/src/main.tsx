// The nodemesh UI: a page per view (hash routes), the token bar, and the agent it talks to.

import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { setToken, token } from './lib/api.js';
import { Config } from './pages/config.js';
import { Intentions } from './pages/intentions.js';
import { Nodes } from './pages/nodes.js';
import { Services } from './pages/services.js';
import { TopologyPage } from './pages/topology.js';
import { useApi } from './lib/use-api.js';

const PAGES: Record<string, { title: string; view: () => preact.JSX.Element }> = {
  topology: { title: 'Topology', view: TopologyPage },
  services: { title: 'Services', view: Services },
  nodes: { title: 'Nodes', view: Nodes },
  intentions: { title: 'Intentions', view: Intentions },
  config: { title: 'Config', view: Config },
};

const current = () => {
  const name = location.hash.replace(/^#\/?/, '');
  return name in PAGES ? name : 'topology';
};

function TokenBar() {
  const [value, setValue] = useState(token());
  const [saved, setSaved] = useState(Boolean(token()));
  return (
    <form class="token" onSubmit={(e) => { e.preventDefault(); setToken(value); setSaved(Boolean(value)); location.reload(); }}>
      <input type="password" name="token" placeholder="API token (kept in this tab only)" autocomplete="off" value={value} onInput={(e) => setValue((e.target as HTMLInputElement).value)} />
      <button type="submit">{saved ? 'Change token' : 'Use token'}</button>
      {saved && <button type="button" onClick={() => { setToken(''); location.reload(); }}>Forget</button>}
    </form>
  );
}

function App() {
  const [page, setPage] = useState(current());
  useEffect(() => {
    const on = () => setPage(current());
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  const self = useApi<{ Config: { NodeName: string; Datacenter: string } }>('/v1/agent/self');
  const View = PAGES[page].view;
  return (
    <div class="app">
      <header>
        <h1>nodemesh</h1>
        <span class="where">{self.data ? `${self.data.Config.NodeName} · ${self.data.Config.Datacenter}` : ''}</span>
        <nav>{Object.entries(PAGES).map(([k, p]) => <a key={k} href={`#/${k}`} class={k === page ? 'active' : ''}>{p.title}</a>)}</nav>
        <TokenBar />
      </header>
      <main><View /></main>
    </div>
  );
}

render(<App />, document.getElementById('app')!);
