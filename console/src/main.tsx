// The page's styles: uPlot's own, then ours. esbuild gathers both into assets/app.css.
import 'uplot/dist/uPlot.min.css';
import './styles/app.css';
import { render } from 'preact';
import { App } from './app';

const root = document.getElementById('app');
if (root !== null) render(<App />, root);
