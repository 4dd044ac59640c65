// The page's tabs, in order. Add a view: import its module here and put it in the list (see app.js).
import search from "./search.js";
import browse from "./browse.js";
import suspects from "./suspects.js";
import duplicates from "./duplicates.js";  // insight (#14)
import map from "./map.js";  // insight (#14)
import knnSuspects from "./knn_suspects.js";  // insight (#14)

export default [search, browse, suspects, duplicates, map, knnSuspects];
