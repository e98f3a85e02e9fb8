// Runs in <head> before the page is drawn: styles that need the theme's script apply
// only where it runs (see .js rules in bastion.css).
document.documentElement.classList.add("js");
