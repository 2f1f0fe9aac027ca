#[test] fn ui(){}
