// (C) PartyServer with hibernation on: each message goes to the room's other connections.
import { routePartykitRequest, Server } from "partyserver";

export class Relay extends Server {
  static options = { hibernate: true };

  onMessage(connection, message) {
    this.broadcast(message, [connection.id]);
  }
}

export default {
  async fetch(request, env) {
    return (await routePartykitRequest(request, env)) ?? new Response("ok");
  },
};
