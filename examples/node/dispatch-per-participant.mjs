// Transcribe every participant of a room with ONE JOB PER PARTICIPANT: your backend creates one
// explicit dispatch per participant, naming them in the metadata,
//   {"participant_identity": "alice"}
// and each job runs a single AgentSession for that participant. One session per job avoids
// agents-js #1927, at the price of one process and one agent participant per speaker.
//
//   node dispatch-per-participant.mjs start      # needs LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET
//
// Environment: OPENAI_BASE_URL and OPENAI_API_KEY (read by the OpenAI client: any OpenAI-compatible
// transcription API; `kit live --agent` sets both to its stand-in), KIT_AGENT_NAME (the name to
// register; explicit dispatch only).
import { AutoSubscribe, ServerOptions, cli, defineAgent, log, voice } from '@livekit/agents';
import * as openai from '@livekit/agents-plugin-openai';
import * as silero from '@livekit/agents-plugin-silero';
import { RoomEvent, TrackSource } from '@livekit/rtc-node';
import { fileURLToPath } from 'node:url';

const AGENT_NAME = process.env.KIT_AGENT_NAME || 'per-participant-transcriber';
const LAST_FINAL_MS = 5000; // after its participant leaves, how long the job waits for the final of their last sentence

export default defineAgent({
  // Runs once per job process, before a job arrives: the model is loaded when the dispatch comes.
  prewarm: async (proc) => {
    proc.userData.vad = await silero.VAD.load(); // defaults: 0.55 s of silence ends an utterance
  },
  entry: async (ctx) => {
    let identity;
    try {
      identity = JSON.parse(ctx.job.metadata || '{}').participant_identity;
    } catch {
      // not JSON: handled below
    }
    if (!identity) {
      log().error({ metadata: ctx.job.metadata }, 'dispatch metadata names no participant_identity');
      ctx.shutdown('no participant to transcribe');
      return;
    }

    // Subscribe to this participant's microphone only: every job decoding every speaker would
    // cost N^2 decoders for N speakers.
    const subscribe = (publication, participant) => {
      if (participant.identity === identity && publication.source === TrackSource.SOURCE_MICROPHONE) {
        publication.setSubscribed(true);
      }
    };
    ctx.room.on(RoomEvent.TrackPublished, subscribe);
    await ctx.connect(undefined, AutoSubscribe.SUBSCRIBE_NONE);
    for (const participant of ctx.room.remoteParticipants.values()) {
      for (const publication of participant.trackPublications.values()) subscribe(publication, participant);
    }

    // Transcription only: STT + VAD, no LLM, no TTS. AgentSession wraps the non-streaming
    // whisper-1 in a StreamAdapter with this VAD, and its room output publishes every final to
    // lk.transcription on the participant's behalf.
    const session = new voice.AgentSession({
      vad: ctx.proc.userData.vad,
      stt: new openai.STT({
        // no baseURL, no apiKey: the OpenAI client reads OPENAI_BASE_URL and OPENAI_API_KEY (api.openai.com
        // by default; under `kit live --agent`, the kit's local stand-in)
        model: 'whisper-1',
        language: 'en',
        useRealtime: false, // 1.9.0 defaults to the realtime websocket API, even for whisper-1
      }),
      // Turns end at the VAD: the default audio turn detector only matters for replying.
      turnHandling: { turnDetection: 'vad' },
      userAwayTimeout: null,
    });
    session.on(voice.AgentSessionEventTypes.Close, () => ctx.shutdown('session closed'));
    // Its participant left: the job is done once their last sentence is out. AgentSession's own close at
    // the disconnect (closeOnDisconnect, the default) stops publishing at once, dropping a final still in
    // the STT (a sentence the VAD had just ended). So: wait for that final (at most LAST_FINAL_MS), then
    // close. (commitUserTurn() cannot flush the STT here: in 1.9.0 it returns nothing to wait on.)
    const lastFinal = () =>
      new Promise((resolve) => {
        const timer = setTimeout(resolve, LAST_FINAL_MS);
        session.on(voice.AgentSessionEventTypes.UserInputTranscribed, (ev) => {
          if (ev.isFinal) {
            clearTimeout(timer);
            resolve();
          }
        });
      });
    ctx.room.on(RoomEvent.ParticipantDisconnected, async (participant) => {
      if (participant.identity !== identity) return;
      await lastFinal();
      await session.close();
    });
    await session.start({
      agent: new voice.Agent({ instructions: 'Transcribe the participant. Never reply.' }),
      room: ctx.room,
      inputOptions: { participantIdentity: identity, textEnabled: false, closeOnDisconnect: false },
      outputOptions: { audioEnabled: false, transcriptionEnabled: true },
    });
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
