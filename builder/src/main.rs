fn main() {
    println!("nodeimg");
}
