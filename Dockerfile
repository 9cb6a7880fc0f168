FROM node:22-bookworm-slim
WORKDIR /app
COPY package.json package-lock.json tsconfig.json ./
COPY src ./src
COPY test ./test
COPY scripts ./scripts
COPY bin ./bin
COPY migrations ./migrations
# installed and compiled as root, so the code stays read-only to the user Sigil runs as
RUN npm ci --no-audit --no-fund
# the only places Sigil writes (the KEK file or the CLI's admin key; embedded storage): owned by that
# user (uid 1000, the image's "node"), mode 0700; a new named volume mounted there takes both
RUN mkdir -p /app/keys /app/data && chown 1000:1000 /app/keys /app/data && chmod 700 /app/keys /app/data
ENV NODE_ENV=production
# unprivileged; numeric, so that Kubernetes' runAsNonRoot can verify it
USER 1000:1000
EXPOSE 3000
# node directly: `npm start` recompiles into dist/ first (prestart), which this user cannot write
CMD ["node", "dist/src/main.js"]
