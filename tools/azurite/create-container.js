// Creates a blob container in Azurite (or any account reachable by the connection string)
// if it does not exist. Used by the test setup: object_store cannot create containers.
//   node tools/azurite/create-container.js <connection-string> <container>
const { BlobServiceClient } = require("@azure/storage-blob");

async function main() {
  const [conn, container] = process.argv.slice(2);
  if (!conn || !container) {
    console.error("usage: create-container.js <connection-string> <container>");
    process.exit(2);
  }
  const client = BlobServiceClient.fromConnectionString(conn).getContainerClient(container);
  await client.createIfNotExists();
}

main().catch((e) => {
  console.error(`create-container: ${e.message}`);
  process.exit(1);
});
