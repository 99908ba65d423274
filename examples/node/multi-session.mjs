// Transcribe every participant of a room from ONE job with one AgentSession per participant: the
// pattern of LiveKit's Python multi-user-transcriber, as agents-js issue #1927 writes it for Node.
//
// On @livekit/agents 1.9.0 the second session.start({ room }) throws
//   A byte stream handler for topic "lk.agent.session" has already been set.
// (every session registers the same room-wide handler; fix proposed in agents-js PR #1934), so only
// the first participant is transcribed. Kept as the reference for that bug: use
// participant-streams.mjs or dispatch-per-participant.mjs instead.
//
//   node multi-session.mjs start      # needs LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET
//
// Its STT is the #1927 reporter's and LiveKit's examples': inference.STT({ model: 'deepgram/nova-3' }),
// LiveKit Inference, no base URL. Nothing here knows of the kit: under `kit live --agent`,
// LIVEKIT_INFERENCE_URL points the client at the kit's local stand-in.
//
// Environment: KIT_AGENT_NAME (the name to register; explicit dispatch only).
import { AutoSubscribe, ServerOptions, cli, defineAgent, inference, log, voice } from '@livekit/agents';
import * as silero from '@livekit/agents-plugin-silero';
import { ParticipantKind, RoomEvent, TrackSource } from '@livekit/rtc-node';
import { fileURLToPath } from 'node:url';

const AGENT_NAME = process.env.KIT_AGENT_NAME || 'multi-session-transcriber';

export default defineAgent({
  // Runs once per job process: the model loads before a job arrives, and every session shares it.
  prewarm: async (proc) => {
    proc.userData.vad = await silero.VAD.load(); // defaults: 0.55 s of silence ends an utterance
  },
  entry: async (ctx) => {
    const sessions = new Map(); // participant identity -> its AgentSession

    const startSession = async (participant) => {
      if (participant.kind === ParticipantKind.AGENT || sessions.has(participant.identity)) return;
      // Transcription only: STT + VAD, no LLM, no TTS. The streaming STT finds each turn's end
      // itself; the session's room output publishes every final to lk.transcription on the
      // participant's behalf.
      const session = new voice.AgentSession({
        vad: ctx.proc.userData.vad,
        stt: new inference.STT({ model: 'deepgram/nova-3', language: 'en' }),
        // Turns end at the VAD: the default audio turn detector only matters for replying.
        turnHandling: { turnDetection: 'vad' },
        userAwayTimeout: null,
      });
      sessions.set(participant.identity, session);
      await session.start({
        agent: new voice.Agent({ instructions: 'Transcribe the participant. Never reply.' }),
        room: ctx.room,
        inputOptions: { participantIdentity: participant.identity, textEnabled: false },
        outputOptions: { audioEnabled: false, transcriptionEnabled: true },
      });
    };

    // A speaker is a participant who publishes a microphone: a session starts at the first one
    // (late joiners too), never for an agent or for someone who only listens.
    const onTrackPublished = (publication, participant) => {
      if (publication.source !== TrackSource.SOURCE_MICROPHONE) return;
      startSession(participant).catch((error) => {
        // agents-js #1927 lands here for every speaker after the first
        log().error({ error, participant: participant.identity }, 'could not start a session');
        sessions.delete(participant.identity);
      });
    };
    ctx.room.on(RoomEvent.TrackPublished, onTrackPublished);
    ctx.room.on(RoomEvent.ParticipantDisconnected, (participant) => {
      sessions.get(participant.identity)?.close();
      sessions.delete(participant.identity);
    });

    await ctx.connect(undefined, AutoSubscribe.AUDIO_ONLY);
    for (const participant of ctx.room.remoteParticipants.values()) {
      for (const publication of participant.trackPublications.values()) {
        onTrackPublished(publication, participant);
      }
    }
  },
});

cli.runApp(
  new ServerOptions({
    agent: fileURLToPath(import.meta.url),
    agentName: AGENT_NAME, // a name means explicit dispatch: the worker joins only rooms it is sent to
    host: '127.0.0.1', // the worker's health-check server (default: every interface, port 8081)
    initializeProcessTimeout: 60 * 1000, // a job process loads silero: on a busy machine, more than the default 10 s
  }),
);
