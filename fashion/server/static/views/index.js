// The page's tabs, in order. Add a view: import its module here and put it in the list (see app.js).
import search from "./search.js";
import browse from "./browse.js";
import suspects from "./suspects.js";

export default [search, browse, suspects];
